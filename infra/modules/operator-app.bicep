// The console's app registration in Microsoft Entra ID, with its app role: the Microsoft Graph Bicep extension
// (Microsoft Learn, "Microsoft Graph Bicep resource reference" — https://learn.microsoft.com/graph/templates/reference/overview
// — and "Use dynamic types for Microsoft Graph Bicep resources" for the extension alias in bicepconfig.json; types
// v1.0.0, Bicep 0.36.1 or later). App roles live on an application object in Entra ID, not on an ARM resource, so
// only this extension (or the az steps in the README) can declare them. The deploying identity needs
// Application.ReadWrite.All (delegated) or Application.ReadWrite.OwnedBy (application).
extension microsoftGraphV1

param appName string
param environmentName string
param operatorRole string

var uniqueName = 'bridge-console-${environmentName}'
var appUrl = 'https://${appName}.azurewebsites.net'

resource registration 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: uniqueName
  displayName: 'Bridge console (${environmentName})'
  signInAudience: 'AzureADMyOrg'
  identifierUris: [
    'api://${tenant().tenantId}/${uniqueName}'
  ]
  web: {
    homePageUrl: '${appUrl}/api/console'
    redirectUris: [
      '${appUrl}/.auth/login/aad/callback'
    ]
    implicitGrantSettings: {
      // App Service Authentication signs in with the ID token flow while no client secret is configured
      enableIdTokenIssuance: true
    }
  }
  appRoles: [
    {
      id: guid(uniqueName, operatorRole)
      value: operatorRole
      displayName: 'Bridge operator'
      description: 'Operates the F&O-Dataverse bridge console: replay, dismiss, resolve, pause and resume'
      allowedMemberTypes: [
        'User'
      ]
      isEnabled: true
    }
  ]
}

// The enterprise application people and groups are assigned the role on.
resource principal 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: registration.appId
  appRoleAssignmentRequired: true
}

output clientId string = registration.appId
output audience string = 'api://${tenant().tenantId}/${uniqueName}'
