import Foundation
import Testing

@testable import Afterimage

@Suite("Streaming base64 decoder")
struct Base64StreamDecoderTests {
    /// Decodes `text` fed in pieces of the given sizes (cycled); returns the bytes and the chunk sizes seen.
    func decode(_ text: [UInt8], pieces: [Int] = [Int.max]) throws -> (bytes: [UInt8], chunks: [Int]) {
        var out: [UInt8] = []
        var chunks: [Int] = []
        let decoder = Base64StreamDecoder { chunk in
            out.append(contentsOf: chunk)
            chunks.append(chunk.count)
        }
        var offset = 0
        var piece = 0
        while offset < text.count {
            let end = min(text.count, offset + pieces[piece % pieces.count])
            try decoder.decode(Array(text[offset..<end]))
            offset = end
            piece += 1
        }
        try decoder.finish()
        #expect(decoder.decodedCount == Int64(out.count))
        return (out, chunks)
    }

    @Test func matchesFoundationForEverySizeAndSplit() throws {
        var generator = SystemRandomNumberGenerator()
        for size in Array(0...70) + [1000, 4099, 65_536 + 7] {
            let bytes = (0..<size).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let text = Array(Data(bytes).base64EncodedString().utf8)
            for pieces in [[Int.max], [1], [3, 5, 7], [4096]] {
                #expect(try decode(text, pieces: pieces).bytes == bytes, "size \(size), pieces \(pieces)")
            }
        }
    }

    @Test func outputComesInBoundedChunks() throws {
        let bytes = (0..<(300 << 10)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let (out, chunks) = try decode(Array(Data(bytes).base64EncodedString().utf8), pieces: [10_000])
        #expect(out == bytes)
        #expect(chunks.allSatisfy { $0 <= Base64StreamDecoder.chunkSize })
        #expect(chunks.count >= 5)
    }

    @Test func acceptsLineBreaksUrlSafeAlphabetAndMissingPadding() throws {
        let bytes: [UInt8] = [0xFB, 0xFF, 0xBF, 0x00, 0x10]
        let standard = Data(bytes).base64EncodedString()  // "+/+/ABA=" style
        let wrapped = Data(bytes).base64EncodedString(options: [.lineLength64Characters, .endLineWithCarriageReturn, .endLineWithLineFeed])
        #expect(try decode(Array(wrapped.utf8)).bytes == bytes)
        let urlSafe = standard.replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
        #expect(try decode(Array(urlSafe.utf8)).bytes == bytes)
        #expect(try decode(Array(standard.replacingOccurrences(of: "=", with: "").utf8)).bytes == bytes)
        #expect(try decode(Array(" \(standard)\n".utf8)).bytes == bytes)
    }

    @Test(arguments: ["QUJD!", "QUJDR", "QQ=A", "=QUJD", "QUJDRA===", "QUJDRA=", "QUJD\u{00}"])
    func refusesWhatIsNotBase64(_ text: String) {
        #expect(throws: Base64StreamDecoder.Failure.self) { try decode(Array(text.utf8)) }
    }

    @Test func aFailingSinkStopsTheDecoding() {
        struct Full: Error {}
        let decoder = Base64StreamDecoder { _ in throw Full() }
        let text = Array(Data(repeating: 7, count: 200_000).base64EncodedString().utf8)
        #expect(throws: Full.self) {
            try decoder.decode(text)
            try decoder.finish()
        }
    }

    @Test func keepsTheFirstBytesForSniffing() throws {
        let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + Array(repeating: 1, count: 100)
        let decoder = Base64StreamDecoder { _ in }
        try decoder.decode(Array(Data(png).base64EncodedString().utf8))
        try decoder.finish()
        #expect(decoder.head == Array(png.prefix(Base64StreamDecoder.headSize)))
        #expect(MediaSniffer.contentType(head: decoder.head, kind: "image") == "image/png")
    }
}
