from shipscope.cli.main import app

app(prog_name="shipscope")
