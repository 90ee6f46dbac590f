// The bridge in one resource group: Function App (Flex Consumption, managed identity), Service Bus with the queues
// from servicebus-entities.json (the file the local broker reads), Table/Blob storage without shared keys,
// Application Insights on Log Analytics, Key Vault for the two apps' client secrets, least-privilege roles.
// `azd up` (azure.yaml) or `az deployment group create -g <rg> -f infra/main.bicep -p environmentName=…`.
targetScope = 'resourceGroup'

@minLength(1)
@maxLength(20)
@description('Environment name (azd: AZURE_ENV_NAME): part of every resource name, and a tag.')
param environmentName string

@description('Region of every resource.')
param location string = resourceGroup().location

@allowed([
  'Standard'
  'Premium'
])
@description('Service Bus tier. Sessions and duplicate detection need Standard or Premium.')
param serviceBusSku string = 'Standard'

@description('Dataverse environment URL, e.g. https://contoso.crm.dynamics.com')
param dataverseUrl string

@description('Finance and Operations environment URL, e.g. https://contoso.operations.dynamics.com')
param fnoUrl string

@description('Microsoft Entra tenant of both apps.')
param tenantId string = tenant().tenantId

@description('App registration (client) id the bridge uses for Dataverse. Empty: the Function App\'s managed identity.')
param dataverseClientId string = ''

@secure()
@description('Its client secret, stored in Key Vault. Empty: the managed identity is used instead.')
param dataverseClientSecret string = ''

@description('App registration (client) id the bridge uses for F&O. Empty: the Function App\'s managed identity.')
param fnoClientId string = ''

@secure()
@description('Its client secret, stored in Key Vault. Empty: the managed identity is used instead.')
param fnoClientSecret string = ''

@description('Console sign-in: create the app registration with its app role (operatorRole) through the Microsoft Graph Bicep extension (modules/operator-app.bicep). The deploying identity needs Application.ReadWrite.All.')
param createOperatorApp bool = false

@description('Console sign-in with an app registration made beforehand (the README\'s az steps): its client id. Empty, and createOperatorApp false: no sign-in; the console and admin API take the master key only.')
param operatorClientId string = ''

@secure()
@description('Its client secret, stored in Key Vault and read by App Service Authentication (the authorization code flow). Empty: the ID token flow.')
param operatorClientSecret string = ''

@description('The app role an operator must hold (a role of that app registration, assigned to people or groups).')
param operatorRole string = 'Bridge.Operator'

@description('Where alert notifications are POSTed (a Teams incoming webhook, a Logic App, PagerDuty). Empty: none.')
param alertWebhookUrl string = ''

@description('Alert rules per map, JSON: {"<map>|*": [{"errors": 5, "minutes": 5, "actions": ["pause", "notify"]}]}.')
param alertRules string = ''

@minValue(0)
@description('Reconciliation (drift check and repair) every this many minutes, per map; 0: off.')
param reconcileIntervalMinutes int = 0

@description('The maps reconciliation compares, comma-separated; empty: every enabled map.')
param reconcileMaps string = ''

@description('When the stored client secrets expire (Key Vault shows and alerts on it); rotate before then.')
param secretsExpireAt string = dateTimeAdd(utcNow(), 'P1Y')

@minValue(40)
@maxValue(1000)
@description('Flex Consumption: the most instances the app scales out to.')
param maximumInstanceCount int = 100

@allowed([
  2048
  4096
])
@description('Flex Consumption: memory per instance, in MB.')
param instanceMemoryMB int = 2048

var token = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
var tags = {
  'azd-env-name': environmentName
  product: 'dataverse-fno-bridge'
}
var names = {
  logs: 'log-${environmentName}-${token}'
  insights: 'appi-${environmentName}-${token}'
  storage: take(toLower('st${replace(environmentName, '-', '')}${token}'), 24)
  serviceBus: 'sb-${environmentName}-${token}'
  keyVault: take(toLower('kv${replace(environmentName, '-', '')}${token}'), 24)
  plan: 'plan-${environmentName}-${token}'
  app: 'func-${environmentName}-${token}'
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    location: location
    tags: tags
    workspaceName: names.logs
    insightsName: names.insights
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    location: location
    tags: tags
    name: names.storage
    workspaceId: monitoring.outputs.workspaceId
  }
}

module serviceBus 'modules/servicebus.bicep' = {
  name: 'servicebus'
  params: {
    location: location
    tags: tags
    name: names.serviceBus
    sku: serviceBusSku
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    location: location
    tags: tags
    name: names.keyVault
    tenantId: tenantId
    dataverseClientSecret: dataverseClientSecret
    fnoClientSecret: fnoClientSecret
    operatorClientSecret: operatorClientSecret
    secretsExpireAt: dateTimeToEpoch(secretsExpireAt)
  }
}

module operatorApp 'modules/operator-app.bicep' = if (createOperatorApp) {
  name: 'operator-app'
  params: {
    appName: names.app
    environmentName: environmentName
    operatorRole: operatorRole
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  params: {
    location: location
    tags: tags
    planName: names.plan
    appName: names.app
    storageAccountName: storage.outputs.name
    deploymentContainerUrl: storage.outputs.deploymentContainerUrl
    serviceBusNamespace: serviceBus.outputs.fullyQualifiedNamespace
    insightsConnectionString: monitoring.outputs.insightsConnectionString
    keyVaultName: keyVault.outputs.name
    dataverseUrl: dataverseUrl
    fnoUrl: fnoUrl
    tenantId: tenantId
    dataverseClientId: dataverseClientId
    dataverseSecretName: keyVault.outputs.dataverseSecretName
    fnoClientId: fnoClientId
    fnoSecretName: keyVault.outputs.fnoSecretName
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    operatorClientId: createOperatorApp ? operatorApp.outputs.clientId : operatorClientId
    operatorAudience: createOperatorApp ? operatorApp.outputs.audience : 'api://${operatorClientId}'
    operatorSecretName: keyVault.outputs.operatorSecretName
    operatorRole: operatorRole
    alertWebhookUrl: alertWebhookUrl
    alertRules: alertRules
    reconcileIntervalMinutes: reconcileIntervalMinutes
    reconcileMaps: reconcileMaps
  }
}

module workbook 'modules/workbook.bicep' = {
  name: 'workbook'
  params: {
    location: location
    tags: tags
    insightsName: monitoring.outputs.insightsName
    environmentName: environmentName
  }
}

module roles 'modules/roles.bicep' = {
  name: 'roles'
  params: {
    principalId: functionApp.outputs.principalId
    storageAccountName: storage.outputs.name
    serviceBusName: serviceBus.outputs.name
    queueNames: serviceBus.outputs.queueNames
    keyVaultName: keyVault.outputs.name
    insightsName: monitoring.outputs.insightsName
  }
}

output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output FUNCTION_APP_URL string = functionApp.outputs.url
output SERVICEBUS_NAMESPACE string = serviceBus.outputs.fullyQualifiedNamespace
output STORAGE_ACCOUNT_NAME string = storage.outputs.name
output KEY_VAULT_NAME string = keyVault.outputs.name
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.insightsName
output CONSOLE_URL string = '${functionApp.outputs.url}/api/console'
output OPERATOR_CLIENT_ID string = createOperatorApp ? operatorApp.outputs.clientId : operatorClientId
