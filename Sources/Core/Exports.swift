// The layers below Core, re-exported: Core's API speaks their types, so the executable, the
// tests and the fuzz targets get them with `import Core`.
@_exported import GatewayValues
@_exported import GatewayHTTP
@_exported import GatewayPolicy
@_exported import GatewayStore
