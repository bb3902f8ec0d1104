from gateway.cli.main import app

app()
