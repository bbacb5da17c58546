import ArgumentParser
import BatonCLI

@main
struct BatonMain {
    static func main() async {
        await BatonCommand.main()
    }
}
