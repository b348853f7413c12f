from rewardctl.cli import main

main()
