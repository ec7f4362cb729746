from jujubackup.cli import run

run()
