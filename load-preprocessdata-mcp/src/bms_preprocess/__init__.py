"""bms_preprocess: cleaning, features, MICE imputation and scaling of BMS telemetry.

Public API (import the modules; this package imports nothing heavy so the server starts fast):

- ``bms_preprocess.clean.clean_readings(frame, limits=None) -> (frame, report)``
- ``bms_preprocess.features.FEATURE_COLUMNS`` and ``add_features(frame, window=12)``
- ``bms_preprocess.pipeline.prepare_readings(frame_or_path, impute="interpolate"|"mice"|"none", window=12)``
- ``bms_preprocess.mice.MiceImputer`` (fit on a bounded sample, deterministic transform, ``quality_``)
- ``bms_preprocess.scaling.BMSScaler``, ``register_scaler``, ``load_scaler`` (model ``bms_scaler``)
- ``bms_preprocess.engine.run_preprocess(path, output, PreprocessOptions(...))`` (file to file, chunked)
"""

__version__ = "0.1.0"
