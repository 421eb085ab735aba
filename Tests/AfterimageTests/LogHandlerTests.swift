import Testing

@testable import Afterimage

@Suite("Log line format")
struct LogHandlerTests {
    @Test func valuesStayOnOneLine() {
        #expect(StderrLogHandler.escape("a\nb", quoteSpaces: false) == "a\\nb")
        #expect(StderrLogHandler.escape("two words", quoteSpaces: true) == "\"two words\"")
        #expect(StderrLogHandler.escape("say \"hi\"", quoteSpaces: true) == "\"say \\\"hi\\\"\"")
        #expect(StderrLogHandler.escape("bell\u{07}", quoteSpaces: true) == "bell\\x07")
        #expect(StderrLogHandler.escape("", quoteSpaces: true) == "\"\"")
    }
}
