"""The campaign board's props: what the CampaignBoard artifact shows for sign-off."""


def campaign_board(product: str, ctx) -> dict:
    return {
        "product": product,
        "audience": "early adopters",
        "channels": [
            {"name": "email", "budget_usd": 2000, "copy": f"{product} - the upgrade early adopters were waiting for."},
            {"name": "social", "budget_usd": 3000, "copy": f"Meet {product}. Built for people who want more."},
        ],
        "research_done": bool(ctx.context.get("research_done")),
    }
