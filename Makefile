# Two commands do everything on a fresh Debian machine (Python >= 3.11, no display needed):
#   make demo   set up, then run the main job (upscale the sample data in a real napari viewer, save results)
#   make test   set up, then run the whole test suite in a real napari viewer on a virtual display
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
UV     := $(VENV)/bin/uv
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# xvfb-run gives Qt a display and Mesa's software OpenGL when there is none
RUN_GUI := $(if $(DISPLAY),,xvfb-run -a -s "-screen 0 1920x1080x24")

.PHONY: setup system-deps demo test test-lowest napari benchmarks clean

system-deps:
	@bash scripts/install_system_deps.sh

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check uv
	$(UV) pip install --python $(PY) -e ".[testing]"
	@rm -f $(VENV)/.installed-*; touch $@

setup: system-deps $(STAMP)

demo: setup
	$(RUN_GUI) $(PY) scripts/demo.py --out demo-output

test: setup
	$(RUN_GUI) $(PY) -m pytest

# the declared lower bounds: lowest direct versions at the lowest supported Python, smoke test (.ci/lowest.sh)
test-lowest: setup
	UV=$(UV) bash .ci/lowest.sh

napari: setup
	$(VENV)/bin/napari --with napari-deep-superres Upscale

benchmarks: setup
	$(PY) benchmarks/run.py --quick

clean:
	rm -rf $(VENV) .venv-lowest demo-output .pytest_cache
