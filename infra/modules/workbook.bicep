// An Azure Monitor workbook on the bridge's Application Insights: per map what the console shows (applied per
// minute and hour, errors, conflicts, held, latency, the last alert), from the OpenTelemetry metrics and log lines.
param location string
param tags object
param insightsName string
param environmentName string

resource insights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: insightsName
}

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, 'bridge-console-workbook', environmentName)
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'Bridge console (${environmentName})'
    category: 'workbook'
    sourceId: insights.id
    serializedData: loadTextContent('../workbook.json')
  }
}

output id string = workbook.id
