// The layer below, re-exported: this layer's API speaks its types, so its users get them with it.
@_exported import GatewayValues
