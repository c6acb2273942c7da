import Testing
@testable import Core
@testable import GatewayStore
@testable import GatewayPolicy
@testable import GatewayHTTP
@testable import GatewayValues

@Suite struct CSVTests {
    @Test func plainFieldsStayAsTheyAre() {
        #expect(CSV.line(["alice", "gpt-4o", "2026-12-07", "12", "0.004000"]) == "alice,gpt-4o,2026-12-07,12,0.004000")
        #expect(CSV.field("") == "")
    }

    @Test func separatorsQuotesAndBreaksAreQuoted() {
        #expect(CSV.field("a,b") == #""a,b""#)
        #expect(CSV.field(#"say "hi""#) == #""say ""hi""""#)
        #expect(CSV.field("two\nlines") == "\"two\nlines\"")
        #expect(CSV.field("cr\rhere") == "\"cr\rhere\"")
    }

    @Test func formulasAreTextInQuotes() {
        #expect(CSV.field(#"=HYPERLINK("http://x","y")"#) == #""'=HYPERLINK(""http://x"",""y"")""#)
        #expect(CSV.field("+1") == #""'+1""#)
        #expect(CSV.field("-2-3") == #""'-2-3""#)
        #expect(CSV.field("@SUM(A1)") == #""'@SUM(A1)""#)
        #expect(CSV.field("\t=1") == "\"'\t=1\"")
        #expect(CSV.field("\r=1") == "\"'\r=1\"")
        // Only the first character makes a formula.
        #expect(CSV.field("a=b") == "a=b")
        #expect(CSV.line(["-x", "y"]) == #""'-x",y"#)
    }
}
