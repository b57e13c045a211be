"""cvlib: customer value studies as parameterised, reproducible notebooks."""
from cvlib.errors import CvlibError, InputDataError, ParamError, StageError
from cvlib.params import Study, load_study
from cvlib.threads import limit_threads

__version__ = "0.1.0"

__all__ = ["CvlibError", "InputDataError", "ParamError", "StageError", "Study", "load_study", "limit_threads",
           "__version__"]

limit_threads()  # single-threaded numerical libraries unless CVLIB_THREADS says otherwise (see cvlib.threads)
