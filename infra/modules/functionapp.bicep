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
param operatorClientId string
param operatorAudience string
param operatorSecretName string
param operatorRole string
param alertWebhookUrl string
param alertRules string
param reconcileIntervalMinutes int
param reconcileMaps string

var signIn = !empty(operatorClientId)
var operatorSecret = !empty(operatorSecretName)
// With sign-in, App Service Authentication stands in front of the console and the admin API: the functions are
// anonymous to the Functions host and check the signed-in operator's app role themselves (shared/ops/auth.py).
var operatorSettings = signIn ? [
  {
    name: 'OPERATOR_AUTH'
    value: 'entra'
  }
  {
    name: 'OPERATOR_ROLE'
    value: operatorRole
  }
] : []
// With a client secret App Service Authentication uses the authorization code flow; without, the ID token flow.
var operatorSecretSettings = signIn && operatorSecret ? [
  {
    name: 'MICROSOFT_PROVIDER_AUTHENTICATION_SECRET'
    value: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=${operatorSecretName})'
  }
] : []
var alertSettings = concat(empty(alertWebhookUrl) ? [] : [
  {
    name: 'ALERT_WEBHOOK_URL'
    value: alertWebhookUrl
  }
], empty(alertRules) ? [] : [
  {
    name: 'ALERT_RULES'
    value: alertRules
  }
])

// Set here, not in the portal: `appSettings` replaces every app setting on each provision.
var reconcileSettings = concat([
  {
    name: 'RECONCILE_INTERVAL_MINUTES'
    value: string(reconcileIntervalMinutes)
  }
], empty(reconcileMaps) ? [] : [
  {
    name: 'RECONCILE_MAPS'
    value: reconcileMaps
  }
])

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
    // with host.json telemetryMode OpenTelemetry: the invocation's trace context reaches the worker, so the
    // webhook, the Service Bus message and the target write share one operation id
    name: 'PYTHON_ENABLE_OPENTELEMETRY'
    value: 'true'
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
  {
    name: 'CONSOLE_URL'
    value: 'https://${appName}.azurewebsites.net/api/console'
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
  // checkov:skip=CKV_AZURE_56: App Service Authentication is configured below (authsettingsV2) when an operator app registration is given; webhooks and health are excluded from it and keep their function keys
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
      appSettings: concat(baseSettings, dataverseSettings, fnoSettings, operatorSettings, operatorSecretSettings, alertSettings, reconcileSettings)
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

// Operators sign in with Microsoft Entra ID; a request without a session or token gets 401 (sign in at
// /.auth/login/aad?post_login_redirect_uri=/api/console). The webhooks and health keep their function keys.
resource auth 'Microsoft.Web/sites/config@2024-04-01' = if (signIn) {
  // checkov:skip=CKV_AZURE_13: false positive: this resource IS App Service Authentication (authsettingsV2, platform.enabled); checkov reads it as site config
  // checkov:skip=CKV_AZURE_63: false positive: HTTP logging is a site-config property, not one of authsettingsV2; the app's logs go to Application Insights
  // checkov:skip=CKV_AZURE_65: false positive: detailed error messages are a site-config property, not one of authsettingsV2
  // checkov:skip=CKV_AZURE_66: false positive: failed request tracing is a site-config property, not one of authsettingsV2
  // checkov:skip=CKV_AZURE_80: false positive: .NET version does not apply to a Python app, nor to authsettingsV2
  // checkov:skip=CKV_AZURE_88: false positive: Azure Files mounts are site config, not authsettingsV2; the app keeps no files
  // checkov:skip=CKV_AZURE_222: Dataverse and F&O call the webhooks over the internet; the public endpoint is the product
  parent: app
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
      excludedPaths: [
        '/api/webhooks/dataverse'
        '/api/webhooks/fno'
        '/api/health'
      ]
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: union({
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenantId}/v2.0'
          clientId: operatorClientId
        }, operatorSecret ? {
          clientSecretSettingName: 'MICROSOFT_PROVIDER_AUTHENTICATION_SECRET'
        } : {})
        validation: {
          allowedAudiences: [
            operatorAudience
            operatorClientId
          ]
        }
      }
    }
    login: {
      tokenStore: {
        enabled: true
      }
    }
  }
}

output name string = app.name
output url string = 'https://${app.properties.defaultHostName}'
output principalId string = app.identity.principalId
