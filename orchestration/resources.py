"""Resources shared by every domain of the code location."""

import dagster as dg

from fraudops.settings import Settings, get_settings


class SettingsResource(dg.ConfigurableResource):
    """The platform settings; ``home`` overrides ``FRAUDOPS_HOME`` (handy in tests)."""

    home: str | None = None

    def get(self) -> Settings:
        """Settings read from the environment, with this resource's overrides."""
        return get_settings(home=self.home) if self.home else get_settings()
