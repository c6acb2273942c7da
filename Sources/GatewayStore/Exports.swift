// The layers below, re-exported: this layer's API speaks their types, so its users get them with it.
@_exported import GatewayPolicy
