// The Dataverse and F&O client secrets, when the bridge authenticates with app registrations rather than its
// managed identity. RBAC-authorised; the app reads them through Key Vault references (Key Vault Secrets User).
param location string
param tags object
param name string
param tenantId string

@secure()
param dataverseClientSecret string

@secure()
param fnoClientSecret string

@secure()
@description('The console sign-in app registration\'s client secret (App Service Authentication); empty: no sign-in.')
param operatorClientSecret string = ''

@description('Expiry of the stored secrets, seconds since the epoch.')
param secretsExpireAt int

var dataverseSecretName = 'dataverse-client-secret'
var fnoSecretName = 'fno-client-secret'
var operatorSecretName = 'operator-auth-secret'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: Key Vault references are resolved from the App Service platform, which a firewalled vault refuses without VNet integration
  // checkov:skip=CKV_AZURE_189: as above, the public endpoint stays on; every read needs an Entra ID role on the vault
  // checkov:skip=CKV2_AZURE_32: private endpoints need a VNet, which this template does not impose
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource dataverseSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(dataverseClientSecret)) {
  // checkov:skip=CKV_AZURE_41: false positive: checkov does not look inside a conditional resource; `exp` is set below
  // checkov:skip=CKV_AZURE_114: false positive: checkov does not look inside a conditional resource; `contentType` is set below
  parent: vault
  name: dataverseSecretName
  properties: {
    value: dataverseClientSecret
    contentType: 'text/plain'
    attributes: {
      enabled: true
      exp: secretsExpireAt
    }
  }
}

resource fnoSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(fnoClientSecret)) {
  // checkov:skip=CKV_AZURE_41: false positive: checkov does not look inside a conditional resource; `exp` is set below
  // checkov:skip=CKV_AZURE_114: false positive: checkov does not look inside a conditional resource; `contentType` is set below
  parent: vault
  name: fnoSecretName
  properties: {
    value: fnoClientSecret
    contentType: 'text/plain'
    attributes: {
      enabled: true
      exp: secretsExpireAt
    }
  }
}

resource operatorSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(operatorClientSecret)) {
  // checkov:skip=CKV_AZURE_41: false positive: checkov does not look inside a conditional resource; `exp` is set below
  // checkov:skip=CKV_AZURE_114: false positive: checkov does not look inside a conditional resource; `contentType` is set below
  parent: vault
  name: operatorSecretName
  properties: {
    value: operatorClientSecret
    contentType: 'text/plain'
    attributes: {
      enabled: true
      exp: secretsExpireAt
    }
  }
}

output name string = vault.name
output dataverseSecretName string = empty(dataverseClientSecret) ? '' : dataverseSecretName
output fnoSecretName string = empty(fnoClientSecret) ? '' : fnoSecretName
output operatorSecretName string = empty(operatorClientSecret) ? '' : operatorSecretName
