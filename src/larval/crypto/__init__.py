"""Transform registry: the algorithms larval's ESP implements, by their PF_KEY and IKE ids."""
