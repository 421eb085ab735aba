import Foundation

/// The providers the daemon serves. Adding one is writing its folder (`Providers/<Name>/`) and adding its
/// type here: its route, its credential rules, its inline decoding and its polling are then found through
/// this list, and nothing else in the daemon names it (see the README, "Adding a provider").
public enum ProviderRegistry {
    public static let all: [any Provider.Type] = [
        ReplicateProvider.self,
        StabilityProvider.self,
        IdeogramProvider.self,
        FalProvider.self,
        ArchiveAPIProvider.self,
    ]

    /// Every provider, built for this daemon.
    public static func make(_ context: ProviderContext) -> [any Provider] {
        all.map { $0.make(context) }
    }

    /// The credential rule of `provider` applied to `settings` (see `Provider.sourceCredential`).
    static func sourceCredential(for provider: ProviderName, in settings: Settings) -> SourceCredential? {
        all.first { $0.name == provider }?.sourceCredential(in: settings)
    }
}
