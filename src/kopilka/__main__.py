from kopilka.entry import main

main()
