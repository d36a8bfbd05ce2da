"""Settings, one module per concern, every value from the environment (see README's env table)."""

from .api import *  # noqa: F401,F403
from .base import *  # noqa: F401,F403
from .logging import *  # noqa: F401,F403
from .metrics import *  # noqa: F401,F403
from .security import *  # noqa: F401,F403
from .services import *  # noqa: F401,F403
from .tasks import *  # noqa: F401,F403
from .tenancy import *  # noqa: F401,F403
