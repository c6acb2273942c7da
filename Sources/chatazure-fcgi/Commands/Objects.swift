import ArgumentParser
import Core
import Foundation

extension ChatAzureFCGI {
    struct Objects: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the stored objects (responses, files, batches, vector stores) users created through the gateway, with their owners.")

        @OptionGroup var options: ConfigOption

        @Option(help: "Only this user's objects.")
        var user: String?

        @Option(help: "Only this kind: response, file, batch or vector_store.")
        var kind: String?

        @Flag(help: "Print a JSON array, one object per stored object.")
        var json = false

        func validate() throws {
            if let kind, StoredObject.Kind(rawValue: kind) == nil { throw ValidationError("--kind must be response, file, batch or vector_store") }
        }

        /// `due` until a batch or background response has ended and is in the ledger, then `billed`.
        static func billing(_ state: UsageStore.LaterBilling) -> String? {
            switch state {
            case .none: nil
            case .due: "due"
            case .billed: "billed"
            }
        }

        func run() throws {
            let config = try options.load()
            let store = try options.openStore(config)
            let users = try store.usernames()
            let objects = try store.allObjects().filter { object in
                (kind.map { object.object.kind.rawValue == $0 } ?? true) && (user.map { users[object.object.userID] == $0 } ?? true)
            }
            if json {
                try ChatAzureFCGI.User.printJSON(objects.map { listed in
                    ["id": listed.object.id, "kind": listed.object.kind.rawValue, "user": users[listed.object.userID] ?? "?",
                     "backend": listed.object.backend, "created": UTCDay.isoTime(Int(listed.createdMs / 1000)),
                     "model": listed.object.model ?? NSNull(), "billing": Self.billing(listed.billing) ?? NSNull()] as [String: Any]
                })
                return
            }
            print(TextTable.render(header: ["ID", "KIND", "USER", "BACKEND", "CREATED", "MODEL", "BILLING"], rows: objects.map { listed in
                [listed.object.id, listed.object.kind.rawValue, users[listed.object.userID] ?? "?", listed.object.backend,
                 UTCDay.isoTime(Int(listed.createdMs / 1000)), listed.object.model ?? "-", Self.billing(listed.billing) ?? "-"]
            }))
        }
    }
}
