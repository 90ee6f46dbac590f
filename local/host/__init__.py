"""The dev host: runs a Functions app's functions from their own binding metadata, as the Functions host would."""
