# README's two commands: `make demo` and `make test`. Both install into .venv first if needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench paper lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev,notebooks]"
	# torchattacks: the optional extra behind `autoattack_ta` and a test oracle (PGD / CW agreement); installed
	# without its dependencies, whose `requests` pin does not apply to the kit.
	$(PY) -m pip install --quiet --no-deps "torchattacks==3.5.1"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m lib pipeline --profile demo
	@cat outputs/tables/table1_balanced.md outputs/tables/table2_tail_classes.md
	@echo "every table and figure: outputs/index.html"

test: $(STAMP)
	$(PY) -m pytest -q

paper: $(STAMP)  # the paper's setting: CIFAR-10-LT, ResNet-18, 100 epochs, AutoAttack (GPU)
	$(PY) -m lib pipeline --profile paper

bench: $(STAMP)
	$(PY) -m lib bench --quick

lint: $(STAMP)
	$(PY) -m ruff check lib tests

clean:
	rm -rf outputs/runs outputs/tables outputs/figures outputs/notebooks
