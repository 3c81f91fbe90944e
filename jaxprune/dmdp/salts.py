"""Every ``jax.random.fold_in`` salt of the Denoised MDP package, in one place.

Each job derives its streams from ``jax.random.key(seed)`` folded with one of these, so two
streams of a job never share a key. The values are the ones the jobs have always used (changing
one changes every result of its job): the online agent (:mod:`jaxprune.dmdp.driver`) and the
update benchmark (:mod:`jaxprune.dmdp.benchmark`) use 1-5, the offline world models
(:mod:`jaxprune.dmdp.offline`) 11-14, the representation test (:mod:`jaxprune.dmdp.disentangle`)
21-23. The benchmark's parameter and state keys are the agent's ``INIT_SALT`` / ``TRAIN_SALT``:
the same two streams (parameters; the train state's key), of another job.
"""

# the online agent (driver.py, agent_state.py); the benchmark's init and state keys too
INIT_SALT = 1  # parameters
TRAIN_SALT = 2  # the train state's key (update keys are fold_in(key, update step))
EXPLORE_SALT = 3  # acting while collecting: fold_in(key, env step)
EVAL_SALT = 4  # evaluation: fold_in(fold_in(key, eval episode), agent step)
PICTURES_SALT = 5  # the factor pictures: fold_in(key, env step)
EVAL_ENV_SEED_OFFSET = 10_000  # the evaluation environment's seed is seed + this (not a salt)

# offline world models (offline.py): each seed's key is folded with these
OFFLINE_INIT_SALT = 11  # parameters
OFFLINE_TRAIN_SALT = 12  # the train state's key
OFFLINE_BATCH_SALT = 13  # sequence sampling: fold_in(fold_in(state key, this), step)
OFFLINE_FEATURE_SALT = 14  # the posterior samples of factor_features

# the representation test (disentangle.py)
DISENTANGLE_DATA_SALT = 21  # environment seeds and the data policy's key
DISENTANGLE_PROBE_SALT = 22  # the probes' keys
DISENTANGLE_PICTURE_SALT = 23  # the factor pictures

SALTS = {name: value for name, value in dict(globals()).items() if name.endswith("_SALT")}
"""Every salt by name (a test checks that the streams of one job never share a value)."""
