import Testing
@testable import GatewayStore

/// What the PostgreSQL driver does to text before libpq sees it: placeholders, the URL's
/// defaults, and the password kept out of logs.
@Suite struct PostgresConnectionTests {
    @Test func placeholdersAreNumberedOutsideQuotesOnly() {
        #expect(PostgresConnection.numberedPlaceholders("SELECT ?1, ?12 FROM t WHERE a = ?2") == "SELECT $1, $12 FROM t WHERE a = $2")
        #expect(PostgresConnection.numberedPlaceholders("SELECT '?1', \"a?2\", ?3") == "SELECT '?1', \"a?2\", $3")
        #expect(PostgresConnection.numberedPlaceholders("SELECT 'it''s ?', ?1") == "SELECT 'it''s ?', $1")
        #expect(PostgresConnection.numberedPlaceholders("VALUES (?, ?)") == "VALUES ($1, $2)")
    }

    @Test func theURLGetsDefaultsItDoesNotSet() {
        #expect(PostgresConnection.withDefaults("postgresql://u@h/db")
                == "postgresql://u@h/db?application_name=chatazure-fcgi&client_encoding=UTF8&connect_timeout=3")
        #expect(PostgresConnection.withDefaults("postgresql://u@h/db?sslmode=require&connect_timeout=10")
                == "postgresql://u@h/db?sslmode=require&connect_timeout=10&application_name=chatazure-fcgi&client_encoding=UTF8")
        #expect(PostgresConnection.withDefaults("host=h dbname=db").hasSuffix(" connect_timeout=3"))
    }

    @Test func aPasswordNeverShows() {
        #expect(PostgresConnection.redacted("postgresql://chatazure:s3cr%40t@db:5432/chat?sslmode=require")
                == "postgresql://chatazure:***@db:5432/chat?sslmode=require")
        #expect(PostgresConnection.redacted("postgresql://db/chat?user=u&password=s3cret&sslmode=require")
                == "postgresql://db/chat?user=u&password=***&sslmode=require")
        #expect(PostgresConnection.redacted("postgresql://u@db/chat") == "postgresql://u@db/chat")
        // Every password parameter, however libpq would decode its name.
        #expect(PostgresConnection.redacted("postgresql://127.0.0.1:1/db?sslpassword=a&password=PWTWO")
                == "postgresql://127.0.0.1:1/db?sslpassword=***&password=***")
        #expect(PostgresConnection.redacted("postgresql://127.0.0.1:1/db?%70assword=PWTHREE&x=1") == "postgresql://127.0.0.1:1/db?%70assword=***&x=1")
        #expect(PostgresConnection.redacted("postgresql://u:p%40ss@w@db/chat") == "postgresql://u:***@db/chat")
        #expect(StoreLocation.postgres(url: "postgresql://a:b@c/d").description == "postgresql://a:***@c/d")
    }

    @Test func anUnreachableServerFailsAsAStoreFailure() {
        #expect(throws: PostgresError.self) { try PostgresConnection(url: "postgresql://nobody@127.0.0.1:9/none?connect_timeout=2") }
    }
}
