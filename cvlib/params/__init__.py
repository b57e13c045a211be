"""Study parameters: one YAML file per study, validated before anything runs.

`load_study(path, overrides)` returns a `Study`; any problem raises `ParamError` whose message names the key, the
file and what is allowed. The models live in one module per part of the study; their names are all here.
"""
from cvlib.params.actions import (  # noqa: F401
    KPI_KEYS,
    Action,
    CampaignParams,
    CrossSell,
    Cycles,
    Drivers,
    FeedbackColumns,
    GroupRule,
    Journey,
    Kpi,
    Lifecycle,
    Monitoring,
    Report,
    Strategy,
    _default_actions,
    _default_groups,
)
from cvlib.params.base import (  # noqa: F401
    DATA_DIR,
    EXAMPLE_PREFIX,
    MAX_ALIASES,
    MAX_PARAMS_BYTES,
    _BoundedLoader,
    _Model,
    safe_yaml,
    short_repr,
)
from cvlib.params.data import (  # noqa: F401
    ATTRIBUTE_TABLES,
    ENGINES,
    AttributeInput,
    Cleaning,
    Connection,
    DatesRule,
    Inputs,
    NonPositiveRule,
    OutlierRule,
    Privacy,
    ReturnsRule,
    TableInput,
    TestIdsRule,
    Toggle,
    TransactionColumns,
    TransactionsInput,
    WindowRule,
)
from cvlib.params.segments import (  # noqa: F401
    DEFAULT_SEGMENTS,
    BinEdges,
    Clusters,
    Clv,
    ClvTiers,
    Contracts,
    FormulaClv,
    Pyramid,
    Rfm,
    SegmentRule,
)
from cvlib.params.study import Study, _fields_at, apply_overrides, format_validation_error, load_study, parse_override  # noqa: F401
from cvlib.params.value import (  # noqa: F401
    CATEGORIES,
    Ahp,
    Category,
    CostToServe,
    Fuzzy,
    GroupWeights,
    Indicator,
    Profitability,
    Value,
    ValueMatrix,
    Weights,
    _default_indicators,
)
