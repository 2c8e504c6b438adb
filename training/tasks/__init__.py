"""One module per trainable thing, each with a flat `train(config)` and `main(argv)`:
vae, ldm, clap, vocoder; and encode_latents (the VAE's posterior, pre-encoded into shards)."""
