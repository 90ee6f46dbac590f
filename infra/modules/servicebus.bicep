// The namespace and its queues. Queue properties are read from servicebus-entities.json — the file the local
// broker loads — so local and Azure queues cannot drift apart.
param location string
param tags object
param name string

@allowed([
  'Standard'
  'Premium'
])
param sku string

var entities = loadJsonContent('../servicebus-entities.json')
var queues = entities.UserConfig.Namespaces[0].Queues

resource namespace 'Microsoft.ServiceBus/namespaces@2022-10-01-preview' = {
  // checkov:skip=CKV_AZURE_199: double encryption needs the Premium tier and customer-managed keys; Standard is the default here
  // checkov:skip=CKV_AZURE_201: customer-managed keys need the Premium tier; Microsoft-managed keys by default
  // checkov:skip=CKV_AZURE_204: public network access stays on for Flex Consumption without VNet integration; local (SAS) auth is off
  name: name
  location: location
  tags: tags
  sku: {
    name: sku
    tier: sku
  }
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    disableLocalAuth: true // Entra ID only: no SAS keys to leak
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

resource queue 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' = [
  for q in queues: {
    parent: namespace
    name: q.Name
    properties: {
      requiresSession: q.Properties.RequiresSession
      requiresDuplicateDetection: q.Properties.RequiresDuplicateDetection
      duplicateDetectionHistoryTimeWindow: q.Properties.DuplicateDetectionHistoryTimeWindow
      maxDeliveryCount: q.Properties.MaxDeliveryCount
      lockDuration: q.Properties.LockDuration
      defaultMessageTimeToLive: q.Properties.DefaultMessageTimeToLive
      deadLetteringOnMessageExpiration: q.Properties.DeadLetteringOnMessageExpiration
    }
  }
]

output name string = namespace.name
output fullyQualifiedNamespace string = '${namespace.name}.servicebus.windows.net'
output queueNames array = [for (q, i) in queues: queue[i].name]
