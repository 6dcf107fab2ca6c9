"""``python -m camnet_cli`` runs the command line."""

from camnet_cli.cli import main

if __name__ == "__main__":  # decoding children must not run the app again
    main()
