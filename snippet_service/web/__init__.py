"""The web app: pages, the JSON API, live updates and the /jobs dashboard."""
