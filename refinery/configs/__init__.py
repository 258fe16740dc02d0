"""Default configs; also where a fastreid checkpoint is dropped (vehicleid_bot_R50-ibn.pth)."""
