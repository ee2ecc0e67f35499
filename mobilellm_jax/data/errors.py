"""The one error type of the data layer."""


class DataError(ValueError):
  """Data that cannot be used as configured; the message says what to run or change."""
