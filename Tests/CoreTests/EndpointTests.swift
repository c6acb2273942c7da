import Testing
@testable import Core
@testable import GatewayStore
@testable import GatewayPolicy
@testable import GatewayHTTP
@testable import GatewayValues

@Suite struct EndpointTests {
    @Test(arguments: [
        ("POST", "/v1/chat/completions", Endpoint(style: .openAI, operation: "chat/completions", item: "", body: .json)),
        ("POST", "/v1/audio/transcriptions", Endpoint(style: .openAI, operation: "audio/transcriptions", item: "", body: .multipart)),
        ("POST", "/v1/responses", Endpoint(style: .openAI, operation: "responses", item: "", body: .json)),
        ("GET", "/v1/responses/resp_1", Endpoint(style: .openAI, operation: "responses", item: "/resp_1", body: .none)),
        ("DELETE", "/v1/responses/resp_1", Endpoint(style: .openAI, operation: "responses", item: "/resp_1", body: .none)),
        ("GET", "/v1/responses/resp_1/input_items", Endpoint(style: .openAI, operation: "responses", item: "/resp_1/input_items", body: .none)),
        ("POST", "/openai/deployments/gpt-4.1/chat/completions",
         Endpoint(style: .azureDeployment("gpt-4.1"), operation: "chat/completions", item: "", body: .json)),
        ("POST", "/openai/deployments/whisper/audio/translations",
         Endpoint(style: .azureDeployment("whisper"), operation: "audio/translations", item: "", body: .multipart)),
        ("POST", "/openai/v1/embeddings", Endpoint(style: .azureV1, operation: "embeddings", item: "", body: .json)),
        ("GET", "/openai/v1/responses/r", Endpoint(style: .azureV1, operation: "responses", item: "/r", body: .none)),
        ("POST", "/openai/responses", Endpoint(style: .azureResponses, operation: "responses", item: "", body: .json)),
        ("GET", "/openai/responses/r/input_items", Endpoint(style: .azureResponses, operation: "responses", item: "/r/input_items", body: .none)),
    ])
    func resolves(method: String, path: String, expected: Endpoint) throws {
        #expect(try Endpoint.resolve(method: method, path: path) == expected)
    }

    @Test(arguments: [
        ("POST", "/v1/moderations", 404), ("POST", "/v1/files/f/content", 405), ("POST", "/openai/deployments/x/files", 404),
        ("PUT", "/v1/files", 405), ("DELETE", "/v1/files/f/content", 405), ("GET", "/v1/files/f/g", 404), ("GET", "/v1/files/a%2Fb", 404),
        ("GET", "/v1/vector_stores/vs/search", 405), ("POST", "/v1/vector_stores/vs/files/f/chunks", 404),
        ("GET", "/v1/vector_stores/vs/file_batches", 405), ("DELETE", "/v1/vector_stores/vs/files/f/content", 405),
        ("GET", "/v1/vector_stores/vs/other", 404), ("GET", "/v1/vector_stores/v%2e/files", 404),
        ("POST", "/openai/deployments/d", 404), ("POST", "/openai/deployments/a b/chat/completions", 404),
        ("POST", "/openai/deployments/../chat/completions", 404), ("GET", "/v1/responses/a/b", 404),
        ("POST", "/openai/responses/x/y/z", 404), ("POST", "/admin", 404), ("POST", "/v1/a%2Fb", 404),
        ("GET", "/v1/chat/completions", 405), ("DELETE", "/v1/responses/r/input_items", 405),
        ("POST", "/v1/responses/r", 405), ("PUT", "/openai/deployments/d/embeddings", 405),
    ])
    func refuses(method: String, path: String, status: Int) {
        #expect(throws: OpenAIError.self) { try Endpoint.resolve(method: method, path: path) }
        do {
            _ = try Endpoint.resolve(method: method, path: path)
        } catch let error as OpenAIError {
            #expect(error.status == status, "\(method) \(path)")
        } catch {
            Issue.record("unexpected \(error)")
        }
    }
}
