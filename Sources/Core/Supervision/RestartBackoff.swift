/// How long a supervisor waits before it restarts a worker process that died, as php-fpm's
/// master does: at once after a process that ran a while, doubling up to `maximumSeconds` while
/// processes keep dying young (a broken config or database would otherwise spin).
public struct RestartBackoff: Sendable, Equatable {
    /// A process that ran at least this long died of something else than its start.
    var healthySeconds: Double = 10
    var firstSeconds: Double = 1
    var maximumSeconds: Double = 30
    /// The wait before the next restart.
    public private(set) var currentSeconds: Double = 0

    public init(healthySeconds: Double = 10, firstSeconds: Double = 1, maximumSeconds: Double = 30) {
        self.healthySeconds = healthySeconds
        self.firstSeconds = firstSeconds
        self.maximumSeconds = maximumSeconds
    }

    /// A process that ran `seconds` died: the wait before starting its replacement.
    public mutating func died(afterRunning seconds: Double) -> Double {
        if seconds >= healthySeconds {
            currentSeconds = 0
        } else {
            currentSeconds = currentSeconds == 0 ? firstSeconds : min(maximumSeconds, currentSeconds * 2)
        }
        return currentSeconds
    }
}
