import Testing
public func _probe() { #expect(1 == 1) }
