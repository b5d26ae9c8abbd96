"""The pipeline's steps, one module each with ``run(params)``, in order: prepare → label → train →
export → evaluate → register (:data:`distill.pipeline.STEPS` says what each reads and writes). A step
imports shared modules only, never another step."""
