# Developer shortcuts; the README's commands are the shell scripts, which need no make.
.PHONY: demo test unit devcloud-up devcloud-down bench-devcloud lint

demo:
	sh scripts/demo.sh

test:
	sh scripts/test.sh

unit:
	sh scripts/test.sh tests/unit

devcloud-up:
	.venv/bin/hepsdesk devcloud up

devcloud-down:
	.venv/bin/hepsdesk devcloud down

bench-devcloud:
	.venv/bin/python benchmarks/devcloud_boot.py

lint:
	.venv/bin/ruff check .
