/// Which backends' deployments may take requests now, shared by the threads of every worker
/// process of a host (its states live in a `HealthTable` in the host's shared file): a
/// deployment that answered 429 or 503 rests for its retry-after (or `cooldownMs`); a backend
/// answering 401 or 403 rests as misconfigured; `circuitFailures` failures in a row open its
/// circuit for `cooldownMs`, after which one request probes it (half-open) while the others go
/// elsewhere, and a success closes it.
public final class BackendHealth: Sendable {
    struct State: Equatable {
        var restingUntilMs: Int64 = 0
        /// The status that made it rest: 429 or 503 tell clients to retry later.
        var restStatus = 0
        var failures = 0
        var circuitOpen = false
        /// When a request started probing an open circuit; a probe that never reports expires.
        var probingSinceMs: Int64?
    }

    /// One backend able to serve a request, with the deployment it would use.
    public struct Candidate: Sendable, Equatable {
        public var index: Int
        /// `backend/deployment`: what rests and what has a circuit.
        public var key: String
        public var priority: Int
        public var weight: Int

        public init(index: Int, key: String, priority: Int, weight: Int) {
            self.index = index
            self.key = key
            self.priority = priority
            self.weight = weight
        }
    }

    /// The candidates to try, in order; when none may be tried, when the first rest ends.
    public struct Order: Sendable, Equatable {
        public var indices: [Int]
        public var soonestMs: Int64?
        /// 429 when a resting deployment was throttled, else 503.
        public var restStatus: Int
    }

    private let table: HealthTable
    let cooldownMs: Int64
    let circuitFailures: Int

    /// Health kept in `host`'s shared file, or in this process alone when nil.
    public init(cooldownSeconds: Int, circuitFailures: Int, host: HostShare? = nil) {
        cooldownMs = Int64(cooldownSeconds) * 1000
        self.circuitFailures = circuitFailures
        table = (host ?? HostShare.anonymous()).health
    }

    /// Highest priority (lowest number) first, shuffled by weight among equals; resting ones and
    /// open circuits left out, except one probe of a circuit whose rest is over.
    public func order(_ candidates: [Candidate], nowMs: Int64, random: inout some RandomNumberGenerator) -> Order {
        var usable: [Candidate] = []
        var soonest: Int64?
        var throttled = false
        table.withSlots { states in
            for candidate in candidates {
                var state = states.state(candidate.key)
                if state.restingUntilMs > nowMs || (state.circuitOpen && state.probingSinceMs.map { nowMs - $0 < cooldownMs } == true) {
                    soonest = min(soonest ?? state.restingUntilMs, state.restingUntilMs)
                    throttled = throttled || state.restStatus == 429
                    continue
                }
                if state.circuitOpen {
                    state.probingSinceMs = nowMs  // this request probes; others (in any process) skip it until it ends
                    states.set(candidate.key, state, nowMs: nowMs)
                }
                usable.append(candidate)
            }
        }
        var ordered: [Int] = []
        for priority in Set(usable.map(\.priority)).sorted() {
            var group = usable.filter { $0.priority == priority }
            while !group.isEmpty {
                let total = group.reduce(0) { $0 + $1.weight }
                var pick = Int(random.next(upperBound: UInt64(total)))
                let chosen = group.firstIndex { pick -= $0.weight; return pick < 0 }!
                ordered.append(group.remove(at: chosen).index)
            }
        }
        return Order(indices: ordered, soonestMs: ordered.isEmpty ? soonest : nil, restStatus: throttled ? 429 : 503)
    }

    /// Notes how an attempt at `key` went; `retryAfterMs` is what Azure asked for, if anything.
    public func record(_ key: String, _ verdict: BackendVerdict, retryAfterMs: Int64?, nowMs: Int64) {
        table.withSlots { states in
            var state = states.state(key)
            state.probingSinceMs = nil
            switch verdict {
            case .answered, .clientError:
                state = State()
            case .throttled(let status):
                state.restingUntilMs = nowMs + (retryAfterMs ?? cooldownMs)
                state.restStatus = status
            case .misconfigured(let status):
                state.restingUntilMs = nowMs + cooldownMs
                state.restStatus = status
            case .failed:
                state.failures += 1
                if state.failures >= circuitFailures || state.circuitOpen {
                    state.circuitOpen = true
                    state.restingUntilMs = nowMs + cooldownMs
                    state.restStatus = 503
                }
            }
            states.set(key, state, nowMs: nowMs)
        }
    }

    /// When the deployment at `key` rests until, if it does (for tests and the log).
    public func restingUntil(_ key: String) -> Int64? {
        table.withSlots { states in
            let until = states.state(key).restingUntilMs
            return until > 0 ? until : nil
        }
    }

    /// Whether the deployment at `key` rests at `nowMs`, and whether its circuit is open (the
    /// metrics' gauges).
    public func condition(_ key: String, nowMs: Int64) -> (resting: Bool, circuitOpen: Bool) {
        table.withSlots { states in
            let state = states.state(key)
            return (state.restingUntilMs > nowMs, state.circuitOpen)
        }
    }
}
