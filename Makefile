# The two commands of the README, and what they stand on.
.PHONY: app test setup

# Serve the app on the committed release models: http://127.0.0.1:4173
app: setup
	npm run build
	npm run preview -- --host 127.0.0.1 --port 4173 --strictPort

# Every test: typecheck, lint, unit, factory, e2e.
test:
	bash scripts/test.sh

setup:
	bash scripts/setup.sh
