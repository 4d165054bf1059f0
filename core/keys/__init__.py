"""How an axolotl config's keys are read before the schema sees them: keys axolotl lacks too (warnings, typos,
--strict), axolotl's deprecated keys and the retired spellings it once accepted (translated, with the modern form).

May import hpcft.core only.
"""
