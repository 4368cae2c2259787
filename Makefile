# The two commands of the README, and what they stand on.
.PHONY: app test setup data zoo

PY := cd models && /usr/bin/python3 -m d2nwg

# Serve the app on the committed release models: http://127.0.0.1:$(PORT)
# (another port: make app PORT=8080; another interface: make app HOST=0.0.0.0).
PORT ?= 4173
HOST ?= 127.0.0.1
app: setup
	npm run build
	npm run preview -- --host $(HOST) --port $(PORT) --strictPort

# Every test: typecheck, lint, unit, factory (with the tiny pipeline), e2e.
test:
	bash scripts/test.sh

setup:
	bash scripts/setup.sh

# The factory's data, from scratch or resumed: datasets from Debian packages,
# backbone features (computed by the TypeScript engine), few-shot baselines.
data: setup
	$(PY) datasets
	$(PY) features
	$(PY) baselines

# The model zoos, from the datasets and their features.
zoo: data
	$(PY) zoo
