// The Function App on the Flex Consumption plan (Linux, Python 3.11) with a system-assigned managed identity.
// Every connection is identity-based: no connection string with a key appears in the app settings.
param location string
param tags object
param planName string
param appName string
param storageAccountName string
param deploymentContainerUrl string
param serviceBusNamespace string
param insightsConnectionString string
param keyVaultName string
param dataverseUrl string
param fnoUrl string
param tenantId string
param dataverseClientId string
param dataverseSecretName string
param fnoClientId string
param fnoSecretName string
param maximumInstanceCount int
param instanceMemoryMB int

// An app registration's id and its Key Vault-held secret go together; without a secret the managed identity is
// used, and the client id is left out (it would be taken for a user-assigned identity).
var dataverseSettings = empty(dataverseSecretName) ? [] : [
  {
    name: 'DATAVERSE_CLIENT_ID'
    value: dataverseClientId
  }
  {
    name: 'DATAVERSE_CLIENT_SECRET'
    value: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=${dataverseSecretName})'
  }
]
var fnoSettings = empty(fnoSecretName) ? [] : [
  {
    name: 'FNO_CLIENT_ID'
    value: fnoClientId
  }
  {
    name: 'FNO_CLIENT_SECRET'
    value: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=${fnoSecretName})'
  }
]
var baseSettings = [
  {
    name: 'AzureWebJobsStorage__accountName'
    value: storageAccountName
  }
  {
    name: 'ServiceBusConnection__fullyQualifiedNamespace'
    value: serviceBusNamespace
  }
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: insightsConnectionString
  }
  {
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: 'Authorization=AAD'
  }
  {
    name: 'DATAVERSE_URL'
    value: dataverseUrl
  }
  {
    name: 'FNO_URL'
    value: fnoUrl
  }
  {
    name: 'AZURE_TENANT_ID'
    value: tenantId
  }
]

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: Flex Consumption zone redundancy exists only in some regions; turn on zoneRedundant where yours has it
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_56: callers are Dataverse and F&O webhooks, authenticated by function keys (and the admin API by the master key), not by App Service authentication
  // checkov:skip=CKV_AZURE_221: Dataverse and F&O call the webhooks over the internet; the public endpoint is the product
  // checkov:skip=CKV_AZURE_222: as above: the webhooks must be reachable from Dataverse and F&O
  // checkov:skip=CKV_AZURE_17: Dataverse and F&O webhooks present no client certificate; they send a function key
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales out from zero on demand; always-ready instances are a cost choice left to the user
  name: appName
  location: location
  tags: union(tags, {
    'azd-service-name': 'bridge'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      healthCheckPath: '/api/health' // anonymous; reports storage and Service Bus reachability
      appSettings: concat(baseSettings, dataverseSettings, fnoSettings)
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

output name string = app.name
output url string = 'https://${app.properties.defaultHostName}'
output principalId string = app.identity.principalId
