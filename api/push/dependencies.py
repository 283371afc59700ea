"""Load-and-validate dependencies of the push routers."""

from typing import Annotated

from fastapi import Depends

from api.core.db import SessionDep
from api.org.dependencies import Marketing
from api.push import campaigns
from api.push.models import Campaign


async def valid_campaign(campaign_id: int, session: SessionDep, _: Marketing) -> Campaign:
    """The campaign in the path (404 CampaignNotFound), for marketers and admins."""
    return await campaigns.get_campaign(session, campaign_id)


ValidCampaign = Annotated[Campaign, Depends(valid_campaign)]
