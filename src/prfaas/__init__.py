"""prfaas: Prefill-as-a-Service for hybrid-attention LLMs.

Long prompts are prefilled on a compute-dense PrfaaS cluster, their state streams over TCP to a
local PD cluster that prefills short prompts and decodes everything, and a global scheduler decides
per request where prefill runs. See docs/structure.md for the package map.
"""

__version__ = "0.1.0"
