"""One declared schema per file format hwsim or ksm reads (pydantic v2 models); see :mod:`hwsim.schemas.validation`."""
