"""cvlib: customer value studies as parameterised, reproducible notebooks.

Importing cvlib changes nothing in the importing process (thread pools included: see `cvlib.threads`)."""
from cvlib.errors import CvlibError, InputDataError, ParamError, StageError
from cvlib.params import Study, load_study

__version__ = "0.1.0"

__all__ = ["CvlibError", "InputDataError", "ParamError", "StageError", "Study", "load_study", "__version__"]
