"""D2NWG model factory: datasets, model zoo, generator training, evaluation and ONNX export.

Run a stage from the `models/` folder with Debian's interpreter:

    /usr/bin/python3 -m d2nwg <stage> [options]

`/usr/bin/python3 -m d2nwg --help` lists the stages.
"""
