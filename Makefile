# The README's two set-up commands: `make run` and `make test`. Each creates what is missing and
# is idempotent: stamp files record what is installed, and a stamp is redone only when its
# requirements file changes.
#
# Environments (torch is installed once and shared through a .pth file):
#   .venv-torch/  torch + torchvision (pip --target), about 2 minutes from this machine's disk
#   .venv/        standalone app and trainer, pinned like Forge (gradio 4.40, diffusers 0.31)
#   .venv-a1111/  pinned like AUTOMATIC1111 1.10 (gradio 3.41.2, transformers 4.30.2, ldm; sgm for SDXL, from
#                 HOSTS_SRC's generative-models tarball: the commit the WebUI pins)
#   /usr/bin/chromium  Debian's Chromium, for the browser tests (Playwright drives it; never a downloaded browser)
#   build/hosts/  the real WebUIs the tests boot: AUTOMATIC1111 v1.10.1 (torch 2.1.2) and Forge (torch 2.3.1),
#                 each with its own venv (the CUDA runtime wheels both pin shared in build/hosts/nvidia-cu12), from
#                 HOSTS_SRC (tests/hosts/build_host.sh; about 3.5 minutes each)
PY ?= python3
TORCH := .venv-torch
VENV := .venv
A1111 := .venv-a1111
PIPQ := -m pip -q --disable-pip-version-check
CHROMIUM := /usr/bin/chromium
PORT ?= 7865
HOSTS_SRC ?= ../shared/hosts
HOSTS := build/hosts
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1
export GRADIO_ANALYTICS_ENABLED := False
SITE = $(shell $(PY) -c 'import sys; print(f"lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages")')

.PHONY: run test test-fast envs hosts screenshots bench-plan bench-ui clean

# The Train Planner page on http://127.0.0.1:$(PORT) (gradio 4.40, the standalone app). Its trainer
# uses the built-in tiny demo model unless MODEL=/path/to/model (diffusers folder or .safetensors).
run: $(VENV)/.ok-app
	$(VENV)/bin/python -m sd_trainplan ui --port $(PORT) $(if $(MODEL),--model "$(MODEL)")

# tests/webui runs in the environment pinned like the WebUI (the real ldm code, no diffusers).
# tests/hosts boots the real WebUIs (.hosts/) and drives them over HTTP and in Chromium.
# tests/after runs last: the run left the checkout (and the WebUIs' trees) as it found them.
test: $(VENV)/.ok-test $(A1111)/.ok $(A1111)/.ok-sgm $(CHROMIUM) hosts
	mkdir -p build && git status --porcelain > build/git-status-before
	$(VENV)/bin/python -m pytest tests --ignore=tests/webui --ignore=tests/after
	$(A1111)/bin/python -m pytest tests/webui
	$(VENV)/bin/python -m pytest tests/after

# The README's screenshots (docs/*.png), on purpose only: the browser tests that take them, writing
# into docs/ instead of a temporary folder.
screenshots: $(VENV)/.ok-test $(A1111)/.ok $(CHROMIUM)
	SD_TRAINPLAN_SCREENSHOTS=$(CURDIR)/docs $(VENV)/bin/python -m pytest tests/test_ui_browser.py \
		tests/test_ui_trainer_browser.py -k "screenshot or stop_stops or lr_range_test"

envs: $(VENV)/.ok-test $(A1111)/.ok $(A1111)/.ok-sgm

hosts: $(HOSTS)/a1111.ok $(HOSTS)/forge.ok

# A real WebUI: its tree and pinned repositories, a venv with the torch it pins, its tiny checkpoint.
$(HOSTS)/%.ok: tests/hosts/build_host.sh tests/hosts/make_tiny_sd1.py tests/hosts/make_tiny_sdxl.py tests/hosts/make_forge_sd1.py
	bash tests/hosts/build_host.sh $* $(HOSTS)/$* $(HOSTS_SRC)
	touch $@

bench-plan: $(VENV)/.ok-app
	$(VENV)/bin/python bench/plan_speed.py

bench-ui: $(VENV)/.ok-test $(A1111)/.ok $(CHROMIUM)
	$(VENV)/bin/python bench/ui_latency.py

# Installed only when missing (CI runs as root on a fresh Debian machine; sudo otherwise).
$(CHROMIUM):
	if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	$$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium

$(TORCH)/.ok: requirements/torch.txt
	rm -rf $(TORCH)
	$(PY) $(PIPQ) install --target $(TORCH) -r requirements/torch.txt
	touch $@

# A new venv that sees the shared torch (its own site-packages still come first).
define make_venv
	test -x $(1)/bin/python || $(PY) -m venv $(1)
	echo "$(CURDIR)/$(TORCH)" > $(1)/$(SITE)/_sd_trainplan_shared_torch.pth
endef

$(VENV)/.ok-app: $(TORCH)/.ok requirements/standalone.txt pyproject.toml
	$(call make_venv,$(VENV))
	$(VENV)/bin/python $(PIPQ) install -r requirements/standalone.txt -e .
	touch $@

$(VENV)/.ok-test: $(VENV)/.ok-app requirements/test.txt
	$(VENV)/bin/python $(PIPQ) install -r requirements/test.txt
	touch $@

# stable-diffusion-sdkit ships the Stability-AI ldm code the WebUI runs; its own pins are years
# stale, so it goes in without them and requirements/a1111.txt supplies what ldm imports.
$(A1111)/.ok: $(TORCH)/.ok requirements/a1111.txt requirements/test.txt pyproject.toml
	$(call make_venv,$(A1111))
	$(A1111)/bin/python $(PIPQ) install -r requirements/a1111.txt -r requirements/test.txt
	$(A1111)/bin/python $(PIPQ) install --no-deps stable-diffusion-sdkit==2.1.5 -e .
	touch $@

# sgm (Stability-AI's generative-models at the commit AUTOMATIC1111 1.10.1 pins: the WebUI's SDXL
# code) for tests/webui: its sgm/ and configs/inference/ unpacked into the venv and put on its path.
SGM := generative-models-45c443b3
$(A1111)/.ok-sgm: $(A1111)/.ok $(HOSTS_SRC)/$(SGM).tar.gz
	rm -rf $(A1111)/generative-models && mkdir -p $(A1111)/generative-models
	tar -xzf $(HOSTS_SRC)/$(SGM).tar.gz -C $(A1111)/generative-models --strip-components=1 \
	  $(SGM)/sgm $(SGM)/configs/inference
	echo "$(CURDIR)/$(A1111)/generative-models" > $(A1111)/$(SITE)/_sd_trainplan_sgm.pth
	touch $@

clean:
	rm -rf $(VENV) $(A1111) $(TORCH) $(HOSTS) .pytest_cache .hypothesis
