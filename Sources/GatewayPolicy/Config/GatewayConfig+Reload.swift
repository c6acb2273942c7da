extension GatewayConfig {
    /// The keys whose new values in `newer` a running process cannot take over: its socket and
    /// threads, its database, the CA file its libcurl handles hold, the log retention of its
    /// recorder. A reload applies everything else and keeps these as they were until a restart.
    public func restartOnlyChanges(in newer: GatewayConfig) -> [String] {
        var changed: [String] = []
        var ours = fastcgi, theirs = newer.fastcgi
        ours.maxBodyBytes = 0
        theirs.maxBodyBytes = 0
        ours.maxUploadBytes = 0
        theirs.maxUploadBytes = 0
        if ours != theirs { changed.append("fastcgi") }
        if databasePath != newer.databasePath { changed.append("web.dbName") }
        if databaseURL != newer.databaseURL { changed.append("database.url") }
        if azure.caFile != newer.azure.caFile { changed.append("azure.ca-file") }
        if retentionDays != newer.retentionDays { changed.append("log.retention-days") }
        if realtime.socket != newer.realtime.socket { changed.append("realtime.socket") }
        if realtime.maxSessions != newer.realtime.maxSessions { changed.append("realtime.max-sessions") }
        return changed
    }
}

extension GatewayConfig {
    /// This config with the restart-only values of `running` (see `restartOnlyChanges`).
    public func keepingRestartOnly(of running: GatewayConfig) -> GatewayConfig {
        var kept = self
        let maxBody = fastcgi.maxBodyBytes, maxUpload = fastcgi.maxUploadBytes
        kept.fastcgi = running.fastcgi
        kept.fastcgi.maxBodyBytes = maxBody
        kept.fastcgi.maxUploadBytes = maxUpload
        kept.databasePath = running.databasePath
        kept.databaseURL = running.databaseURL
        kept.azure.caFile = running.azure.caFile
        kept.retentionDays = running.retentionDays
        kept.realtime.socket = running.realtime.socket
        kept.realtime.maxSessions = running.realtime.maxSessions
        return kept
    }
}
