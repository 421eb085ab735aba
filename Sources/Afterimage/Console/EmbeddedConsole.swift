/// The console's files (`Console/Files/`), compiled into the binary by SwiftPM (`.embedInCode` resources in
/// Package.swift): an installed daemon needs nothing beside it, and there is no generated copy to keep in step.
/// Adding a file means naming it in Package.swift and here.
enum EmbeddedConsole {
    static let files: [String: String] = [
        "console.css": String(decoding: PackageResources.console_css, as: UTF8.self),
        "console.js": String(decoding: PackageResources.console_js, as: UTF8.self),
        "favicon.svg": String(decoding: PackageResources.favicon_svg, as: UTF8.self),
        "index.html": String(decoding: PackageResources.index_html, as: UTF8.self),
    ]
}
