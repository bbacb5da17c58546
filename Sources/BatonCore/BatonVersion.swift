/// This build's version: reported by `baton --version`, written into the node registry so
/// `baton nodes` shows which nodes run what.
public enum BatonVersion {
    public static let current = "0.1.0-dev"
}
