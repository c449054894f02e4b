"""Start one web process: ``python run_web.py`` (the same as ``snippet-service-web``;
see snippet_service/web/server.py)."""

from snippet_service.web.server import main

if __name__ == "__main__":
    main()
