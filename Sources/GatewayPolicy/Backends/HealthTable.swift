/// `BackendHealth`'s states in a `SharedRegion`, so every worker process of a host sees one
/// state per deployment: a 429 one process saw rests the deployment for all, and an open
/// circuit's probe is taken by one process only. Slots are keyed by two independent hashes of
/// `backend/deployment` (128 bits: two keys sharing both do not happen) and found within a
/// window of `window` slots from the first hash; a state back to normal frees its slot. Every
/// access holds the region's mutex.
struct HealthTable: Sendable {
    let region: SharedRegion
    let offset: Int
    let capacity: Int

    static let slotSize = 64
    /// Slots looked at per key: a full window gives up the one whose rest ends first.
    static let window = 32
    static let secondSeed: UInt64 = 0x84222325_cbf29ce4

    static func bytes(capacity: Int) -> Int { capacity * slotSize }

    /// Runs `body` with the slots, holding the region's mutex.
    func withSlots<Result>(_ body: (inout Slots) -> Result) -> Result {
        region.withLock {
            var slots = Slots(table: self)
            return body(&slots)
        }
    }

    /// The slots while the mutex is held.
    struct Slots {
        let table: HealthTable

        func state(_ key: String) -> BackendHealth.State {
            guard let slot = find(Key(key)) else { return BackendHealth.State() }
            return read(slot)
        }

        /// Keeps `state` for `key`; a normal state frees its slot.
        func set(_ key: String, _ state: BackendHealth.State, nowMs: Int64) {
            let key = Key(key)
            let found = find(key)
            if state == BackendHealth.State() {
                if let found { clear(found) }
                return
            }
            let slot = found ?? claim(key, nowMs: nowMs)
            write(slot, key, state)
        }

        struct Key {
            var a: UInt64
            var b: UInt64

            init(_ text: String) {
                a = SharedHash.of(text)
                b = SharedHash.of(text, seed: HealthTable.secondSeed)
            }
        }

        private func word(_ slot: Int, _ field: Int) -> UnsafeMutablePointer<UInt64> {
            table.region.word(table.offset + slot * HealthTable.slotSize + field * 8)
        }

        /// The `index`th slot of `key`'s window.
        private func slot(_ key: Key, _ index: Int) -> Int {
            (Int(key.a % UInt64(table.capacity)) + index) % table.capacity
        }

        private var windowSize: Int { min(HealthTable.window, table.capacity) }

        private func find(_ key: Key) -> Int? {
            for index in 0..<windowSize {
                let slot = slot(key, index)
                if word(slot, 0).pointee == key.a && word(slot, 1).pointee == key.b { return slot }
            }
            return nil
        }

        /// A free slot of the window, else one whose state is over, else the one whose rest
        /// ends first: a key no window has room for costs another deployment its rest, not the table.
        private func claim(_ key: Key, nowMs: Int64) -> Int {
            var over: Int?
            var soonest = slot(key, 0)
            for index in 0..<windowSize {
                let slot = slot(key, index)
                if word(slot, 0).pointee == 0 { return slot }
                let state = read(slot)
                if over == nil && !state.isLive(nowMs: nowMs) { over = slot }
                if state.restingUntilMs < read(soonest).restingUntilMs { soonest = slot }
            }
            return over ?? soonest
        }

        private func read(_ slot: Int) -> BackendHealth.State {
            var state = BackendHealth.State()
            state.restingUntilMs = Int64(bitPattern: word(slot, 2).pointee)
            let probing = Int64(bitPattern: word(slot, 3).pointee)
            state.probingSinceMs = probing == 0 ? nil : probing
            state.restStatus = Int(word(slot, 4).pointee)
            state.failures = Int(word(slot, 5).pointee)
            state.circuitOpen = word(slot, 6).pointee != 0
            return state
        }

        private func write(_ slot: Int, _ key: Key, _ state: BackendHealth.State) {
            word(slot, 0).pointee = key.a
            word(slot, 1).pointee = key.b
            word(slot, 2).pointee = UInt64(bitPattern: state.restingUntilMs)
            word(slot, 3).pointee = UInt64(bitPattern: state.probingSinceMs ?? 0)
            word(slot, 4).pointee = UInt64(state.restStatus)
            word(slot, 5).pointee = UInt64(state.failures)
            word(slot, 6).pointee = state.circuitOpen ? 1 : 0
        }

        private func clear(_ slot: Int) {
            for field in 0..<7 { word(slot, field).pointee = 0 }
        }
    }
}

extension BackendHealth.State {
    /// Whether it still says something at `nowMs`: a rest not over, or an open circuit.
    func isLive(nowMs: Int64) -> Bool {
        restingUntilMs > nowMs || circuitOpen
    }
}
